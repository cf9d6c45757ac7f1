/* Option table, the configuration file, parsing, validation, --help and reload for tallyd.
 * Owns no state beyond the config struct. */
#include "config.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/addr.h"
#include "core/conffile.h"
#include "core/log.h"
#include "tally/protocol.h"

enum opt_kind { OPT_STR, OPT_ADDR, OPT_U32, OPT_U64, OPT_LEVEL, OPT_FLAG, OPT_ACTION };

struct opt {
    const char *name;
    enum opt_kind kind;
    const char *def; /* default, as text; NULL for none */
    const char *arg;
    const char *help;
    uint64_t min, max;
    int live; /* a reload (SIGHUP) applies it without a restart */
};

static const struct opt opts[] = {
    {"config", OPT_ACTION, NULL, "FILE",
     "read options from FILE first ('name = value' lines named like these options; the "
     "command line overrides them; SIGHUP reads it again)",
     0, 0, 0},
    {"check-config", OPT_ACTION, NULL, NULL,
     "validate the configuration file and the command line, then exit (0 valid, 2 not)", 0, 0, 0},
    {"db", OPT_STR, "", "CONNINFO",
     "PostgreSQL conninfo (libpq); empty uses the PG* environment variables", 0, 0, 0},
    {"listen", OPT_ADDR, "127.0.0.1:7400", "HOST:PORT",
     "address for collectors (TLS with --tls-*, else plain TCP and loopback only)", 0, 0, 0},
    {"tls-cert", OPT_STR, "", "FILE",
     "collector port: tallyd's certificate (PEM; with --tls-key and --tls-ca: mutual TLS 1.3)", 0,
     0, 0},
    {"tls-key", OPT_STR, "", "FILE", "collector port: the private key of --tls-cert (PEM)", 0, 0,
     0},
    {"tls-ca", OPT_STR, "", "FILE",
     "collector port: CA certificates a collector's certificate must chain to (PEM)", 0, 0, 0},
    {"insecure-plaintext", OPT_FLAG, NULL, NULL,
     "allow plain TCP for collectors on a non-loopback --listen (votes travel unencrypted and "
     "unauthenticated)",
     0, 0, 0},
    {"hello-timeout-ms", OPT_U32, "10000", "N",
     "close a connection that has not sent its Hello (TLS handshake included) within N ms", 0,
     3600000, 0},
    {"frame-timeout-ms", OPT_U32, "30000", "N",
     "close a connection that takes longer than N ms to send one frame once it has begun", 0,
     3600000, 0},
    {"idle-timeout-ms", OPT_U32, "120000", "N",
     "close a collector's session after N ms without a byte (collectors send keep-alives)", 0,
     86400000, 0},
    {"max-connections", OPT_U32, "4096", "N",
     "collector connections at most; new ones beyond are closed at accept", 1, 1000000, 0},
    {"max-buffered-bytes", OPT_U64, "1073741824", "N",
     "input bytes buffered across all collector connections before tallyd stops reading", 1u << 20,
     UINT64_C(1) << 40, 0},
    {"http", OPT_ADDR, "127.0.0.1:7480", "HOST:PORT",
     "address for the dashboard, the results API, /metrics and health", 0, 0, 0},
    {"checkpoint-ms", OPT_U32, "200", "N", "checkpoint interval in milliseconds", 10, 600000, 1},
    {"refresh-ms", OPT_U32, "1000", "N",
     "how often to read the collectors, the consultation's state (embargo, certified) and "
     "tallyctl's requests (retract, close, tie rule)",
     50, 60000, 0},
    {"backlog-votes", OPT_U64, "2000000", "N",
     "stop reading from collectors while this many votes are not yet durable", 1, UINT64_C(1) << 40,
     1},
    {"max-batch-votes", OPT_U32, "100000", "N", "largest batch accepted", 1, 10000000, 1},
    {"max-frame-bytes", OPT_U32, "8388608", "N", "largest frame accepted", 1024, 1u << 30, 0},
    {"expected-ballots", OPT_U64, "1000000", "N",
     "size the ballot set for this many voters up front (it grows past it)", 1, UINT64_C(1) << 36,
     0},
    {"shutdown-grace-ms", OPT_U32, "10000", "N",
     "on SIGTERM, how long to wait for PostgreSQL to take the final checkpoint", 0, 3600000, 1},
    {"min-anonymity", OPT_U32, "100", "N",
     "store accepted ballot tokens in pages of at least N, apart from every count", 1, 32768, 0},
    {"standby", OPT_FLAG, NULL, NULL,
     "if another tallyd writes this database, wait and take over when it stops (default: exit 1)",
     0, 0, 0},
    {"embargo", OPT_FLAG, NULL, NULL,
     "start under embargo: every output shows progress but no counts until tallyctl embargo off", 0,
     0, 0},
    {"http-tls-cert", OPT_STR, "", "FILE",
     "HTTP port: serve HTTPS with this certificate (PEM; with --http-tls-key)", 0, 0, 0},
    {"http-tls-key", OPT_STR, "", "FILE", "HTTP port: the private key of --http-tls-cert", 0, 0, 0},
    {"log-level", OPT_LEVEL, "info", "LEVEL", "debug, info, warn or error", 0, 0, 1},
    {"help", OPT_ACTION, NULL, NULL, "show this help and exit (also -h)", 0, 0, 0},
    {"version", OPT_ACTION, NULL, NULL, "show the version and exit", 0, 0, 0},
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
    fprintf(out, "\nSignals: SIGTERM or SIGINT writes a final checkpoint and exits; SIGHUP reads "
                 "the configuration file again.\n"
                 "Exit status: 0 clean stop with everything durable; 1 runtime failure "
                 "(listen, database, another writer, final checkpoint); 2 usage or configuration "
                 "error.\n");
}

static const struct opt *opt_find(const char *name)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

/* The field of a string option (all are sizeof(cfg->db) long). */
static char *str_field(struct tallyd_config *cfg, const char *n)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"db", offsetof(struct tallyd_config, db)},
        {"tls-cert", offsetof(struct tallyd_config, tls_cert)},
        {"tls-key", offsetof(struct tallyd_config, tls_key)},
        {"tls-ca", offsetof(struct tallyd_config, tls_ca)},
        {"http-tls-cert", offsetof(struct tallyd_config, http_tls_cert)},
        {"http-tls-key", offsetof(struct tallyd_config, http_tls_key)},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(fields[i].name, n) == 0)
            return (char *)cfg + fields[i].off;
    return NULL;
}

int tallyd_host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
        return 1;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* What no single option can say: TLS files come together, plain TCP stays on loopback. */
static int validate(const struct tallyd_config *cfg, char *err, size_t len)
{
    int n_tls = !!cfg->tls_cert[0] + !!cfg->tls_key[0] + !!cfg->tls_ca[0];
    if (n_tls != 0 && n_tls != 3) {
        snprintf(err, len,
                 "--tls-cert, --tls-key and --tls-ca go together (mutual TLS: "
                 "tallyd's certificate, its key, and the CA of the collectors' "
                 "certificates)");
        return -1;
    }
    if (!!cfg->http_tls_cert[0] != !!cfg->http_tls_key[0]) {
        snprintf(err, len, "--http-tls-cert and --http-tls-key go together");
        return -1;
    }
    if (n_tls == 0 && !cfg->insecure_plaintext && !tallyd_host_is_loopback(cfg->listen_host)) {
        snprintf(err, len,
                 "--listen %s is not a loopback address, and without --tls-cert, --tls-key and "
                 "--tls-ca anyone who reaches it could send votes as any collector, unencrypted; "
                 "give the TLS files (tallyctl ca init makes them), or --insecure-plaintext to "
                 "accept that",
                 cfg->listen_host);
        return -1;
    }
    return 0;
}

/* Sets one option from its text; on failure writes why into err. */
static int apply(struct tallyd_config *cfg, const struct opt *o, const char *val, char *err,
                 size_t len)
{
    uint64_t v;
    const char *n = o->name;
    switch (o->kind) {
    case OPT_STR: {
        char *dst = str_field(cfg, n);
        if (!dst || strlen(val) >= sizeof(cfg->db))
            goto bad;
        snprintf(dst, sizeof(cfg->db), "%s", val);
        return 0;
    }
    case OPT_ADDR:
        if (strcmp(n, "listen") == 0
                ? addr_split(val, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port)
                : addr_split(val, cfg->http_host, sizeof(cfg->http_host), &cfg->http_port))
            goto bad;
        return 0;
    case OPT_LEVEL:
        cfg->log_level = log_level_parse(val);
        if (cfg->log_level < 0)
            goto bad;
        return 0;
    case OPT_U32:
    case OPT_U64:
        if (parse_u64(val, o->max, &v) || v < o->min)
            goto bad;
        if (strcmp(n, "checkpoint-ms") == 0)
            cfg->checkpoint_ms = (uint32_t)v;
        else if (strcmp(n, "refresh-ms") == 0)
            cfg->refresh_ms = (uint32_t)v;
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
        else if (strcmp(n, "hello-timeout-ms") == 0)
            cfg->hello_timeout_ms = (uint32_t)v;
        else if (strcmp(n, "frame-timeout-ms") == 0)
            cfg->frame_timeout_ms = (uint32_t)v;
        else if (strcmp(n, "idle-timeout-ms") == 0)
            cfg->idle_timeout_ms = (uint32_t)v;
        else if (strcmp(n, "max-connections") == 0)
            cfg->max_connections = (uint32_t)v;
        else if (strcmp(n, "max-buffered-bytes") == 0)
            cfg->max_buffered_bytes = v;
        return 0;
    case OPT_FLAG: { /* "--standby" on the command line; "standby = yes|no" in a file */
        int *flag = strcmp(n, "standby") == 0   ? &cfg->standby
                    : strcmp(n, "embargo") == 0 ? &cfg->embargo
                                                : &cfg->insecure_plaintext;
        if (!val || !strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "1") || !*val)
            *flag = 1;
        else if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "0"))
            *flag = 0;
        else
            goto bad;
        return 0;
    }
    case OPT_ACTION:
        return 0;
    }
bad:
    if (o->kind == OPT_U32 || o->kind == OPT_U64)
        snprintf(err, len, "--%s: invalid value '%s' (an integer from %llu to %llu)", n, val,
                 (unsigned long long)o->min, (unsigned long long)o->max);
    else if (o->kind == OPT_ADDR)
        snprintf(err, len, "--%s: invalid value '%s' (expected HOST:PORT)", n, val);
    else if (o->kind == OPT_FLAG)
        snprintf(err, len, "--%s: invalid value '%s' (yes or no)", n, val);
    else
        snprintf(err, len, "--%s: invalid value '%s'", n, val);
    return -1;
}

static int file_set(void *arg, const char *name, const char *value, char *err, size_t len)
{
    const struct opt *o = opt_find(name);
    if (!o || o->kind == OPT_ACTION) {
        snprintf(err, len, "unknown option '%s' (see tallyd --help)", name);
        return -1;
    }
    return apply(arg, o, value, err, len);
}

/* getopt_long over argv: actions only (first pass: --config, --help, ...) or settings only
 * (second pass, over the file). Returns 0, 1 (help/version printed) or -1 (error printed). */
static int cmdline(struct tallyd_config *cfg, int argc, char **argv, int settings, FILE *errs)
{
    struct option lopts[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++) {
        int has = opts[i].arg ? required_argument : no_argument;
        lopts[i] = (struct option){opts[i].name, has, NULL, (int)i};
    }
    lopts[N_OPTS] = (struct option){0};
    opterr = 0;
    optind = 1;
    int c;
    char err[1200];
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        if (c == 'h') {
            if (!settings)
                usage(stdout);
            return settings ? 0 : 1;
        }
        if (c == '?' || c == ':') {
            if (errs)
                fprintf(errs, "tallyd: unknown or incomplete option '%s'\nTry 'tallyd --help'.\n",
                        argv[optind - 1]);
            return -1;
        }
        const struct opt *o = &opts[c];
        if (o->kind == OPT_ACTION) {
            if (settings)
                continue;
            if (strcmp(o->name, "help") == 0) {
                usage(stdout);
                return 1;
            }
            if (strcmp(o->name, "version") == 0) {
                printf("tallyd 0.1.0 (protocol %u)\n", TALLY_PROTOCOL_VERSION);
                return 1;
            }
            if (strcmp(o->name, "config") == 0)
                snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", optarg);
            else if (strcmp(o->name, "check-config") == 0)
                cfg->check_config = 1;
            continue;
        }
        if (settings && apply(cfg, o, optarg, err, sizeof(err)) != 0) {
            if (errs)
                fprintf(errs, "tallyd: %s\nTry 'tallyd --help'.\n", err);
            return -1;
        }
    }
    if (optind < argc) {
        if (errs)
            fprintf(errs, "tallyd: unexpected argument '%s'\nTry 'tallyd --help'.\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Defaults, then the file, then the command line. */
static int build(struct tallyd_config *cfg, char *err, size_t len)
{
    char why[1200];
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def && apply(cfg, &opts[i], opts[i].def, why, sizeof(why)) != 0) {
            snprintf(err, len, "default of --%s does not parse (a bug)", opts[i].name);
            return -1;
        }
    if (cfg->config_path[0] && conffile_read(cfg->config_path, file_set, cfg, err, len) != 0)
        return -1;
    return 0;
}

int tallyd_config_parse(struct tallyd_config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->argc = argc;
    cfg->argv = argv;
    int rc = cmdline(cfg, argc, argv, 0, stderr);
    if (rc != 0)
        return rc;
    char err[1400];
    if (build(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tallyd: %s\n", err);
        return -1;
    }
    if (cmdline(cfg, argc, argv, 1, stderr) != 0)
        return -1;
    if (validate(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tallyd: %s\nTry 'tallyd --help'.\n", err);
        return -1;
    }
    if (cfg->check_config) {
        if (cfg->config_path[0])
            printf("tallyd: configuration OK (%s)\n", cfg->config_path);
        else
            printf("tallyd: configuration OK (command line only)\n");
        return 1;
    }
    return 0;
}

int tallyd_config_reload(const struct tallyd_config *cur, struct tallyd_config *next, char *err,
                         size_t err_len)
{
    memset(next, 0, sizeof(*next));
    next->argc = cur->argc;
    next->argv = cur->argv;
    snprintf(next->config_path, sizeof(next->config_path), "%s", cur->config_path);
    next->standby = 0;
    next->embargo = 0;
    if (build(next, err, err_len) != 0)
        return -1;
    /* The command line was valid at start and is the same now. */
    if (cmdline(next, next->argc, next->argv, 1, NULL) != 0) {
        snprintf(err, err_len, "the command line no longer parses");
        return -1;
    }
    return validate(next, err, err_len);
}

void tallyd_config_diff(const struct tallyd_config *a, const struct tallyd_config *b,
                        void (*say)(void *arg, const char *name, int live), void *arg)
{
#define DIFF(name, field)                                                                          \
    do {                                                                                           \
        if (a->field != b->field)                                                                  \
            say(arg, name, opt_find(name)->live);                                                  \
    } while (0)
    if (strcmp(a->db, b->db) != 0)
        say(arg, "db", 0);
    if (strcmp(a->listen_host, b->listen_host) != 0 || a->listen_port != b->listen_port)
        say(arg, "listen", 0);
    if (strcmp(a->http_host, b->http_host) != 0 || a->http_port != b->http_port)
        say(arg, "http", 0);
    DIFF("checkpoint-ms", checkpoint_ms);
    DIFF("refresh-ms", refresh_ms);
    DIFF("backlog-votes", backlog_votes);
    DIFF("max-batch-votes", max_batch_votes);
    DIFF("max-frame-bytes", max_frame_bytes);
    DIFF("expected-ballots", expected_ballots);
    DIFF("shutdown-grace-ms", shutdown_grace_ms);
    DIFF("min-anonymity", min_anonymity);
    DIFF("standby", standby);
    DIFF("embargo", embargo);
    if (strcmp(a->tls_cert, b->tls_cert) || strcmp(a->tls_key, b->tls_key) ||
        strcmp(a->tls_ca, b->tls_ca))
        say(arg, "tls-cert", 0);
    if (strcmp(a->http_tls_cert, b->http_tls_cert) || strcmp(a->http_tls_key, b->http_tls_key))
        say(arg, "http-tls-cert", 0);
    DIFF("insecure-plaintext", insecure_plaintext);
    DIFF("hello-timeout-ms", hello_timeout_ms);
    DIFF("frame-timeout-ms", frame_timeout_ms);
    DIFF("idle-timeout-ms", idle_timeout_ms);
    DIFF("max-connections", max_connections);
    DIFF("max-buffered-bytes", max_buffered_bytes);
    DIFF("log-level", log_level);
#undef DIFF
}
