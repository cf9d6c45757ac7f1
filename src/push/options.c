/* tally-push's options: the table that feeds getopt_long, the configuration file and
 * --help, the checks of each value and of the options together. Owns what --help says;
 * what each mode does is main.c's, sheets_run.c's and receipts_run.c's. */
#include "push/options.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/addr.h"
#include "core/conffile.h"
#include "push/push.h"
#include "push/receipts.h"

#define TALLY_PUSH_VERSION "0.1.0"

/* One table feeds getopt_long, the configuration file and --help. An action is for the
 * command line only; every other option may also be set in the file. */
enum popt_kind {
    POPT_SERVER,
    POPT_COLLECTOR,
    POPT_PATH,
    POPT_NAME,
    POPT_BATCH,
    POPT_FLAG,
    POPT_HTTP,
    POPT_HEAD,
    POPT_ACTION
};

struct popt {
    const char *name;
    enum popt_kind kind;
    const char *def;  /* default, as text, applied by the same code; NULL for none */
    const char *arg;  /* its value in --help; NULL: a flag, no value on the command line */
    const char *help; /* each '\n' continues under the previous line in --help */
};

static const struct popt popts[] = {
    {"server", POPT_SERVER, NULL, "HOST:PORT[,...]",
     "tallyd's collector address; a list (comma-separated) names\n"
     "an active tallyd and its standbys on one database, tried in\n"
     "turn (see below)"},
    {"collector", POPT_COLLECTOR, NULL, "ID", "this collector's id, as registered in tallyd"},
    {"spool", POPT_PATH, NULL, "DIR", "spool directory, one per collector (created if missing)"},
    {"ballot-key", POPT_PATH, NULL, "FILE",
     "32 raw bytes or 64 hex digits; the same secret on every\n"
     "collector (default: a public demo key, with a warning)"},
    {"tls-cert", POPT_PATH, NULL, "FILE",
     "TLS 1.3: this collector's certificate (PEM), the one pinned\n"
     "to its id in tallyd (tallyctl add-collector ID --cert FILE);\n"
     "with --tls-key and --tls-ca, all three or none (plain TCP)"},
    {"tls-key", POPT_PATH, NULL, "FILE", "its private key (PEM, not encrypted)"},
    {"tls-ca", POPT_PATH, NULL, "FILE",
     "the CA certificate(s) (PEM) tallyd's certificate must chain\n"
     "to; it must also name the host of --server"},
    {"tls-server-name", POPT_NAME, NULL, "NAME",
     "the name tallyd's certificate must hold instead (a DNS name,\n"
     "also sent as SNI, or an IP address)"},
    {"batch", POPT_BATCH, "10000", "N", "votes per batch, capped by the server"},
    {"quiet", POPT_FLAG, NULL, NULL, "no progress or informational messages on stderr"},
    {"sheets", POPT_ACTION, NULL, "FILE",
     "push the tally sheets of FILE (see below) instead of reading\n"
     "votes: no vote input is read then"},
    {"verify-receipts", POPT_ACTION, NULL, NULL,
     "check tallyd's receipt for every durable batch of the spool\n"
     "against --head (see below); sends nothing"},
    {"head", POPT_HEAD, NULL, "HASH",
     "--verify-receipts: the published chain head (64 hex digits)"},
    {"http", POPT_HTTP, NULL, "HOST:PORT", "--verify-receipts: tallyd's HTTP address"},
    {"http-tls-ca", POPT_PATH, NULL, "FILE",
     "--verify-receipts over HTTPS: the CA certificate(s) (PEM)\n"
     "tallyd's HTTP certificate must chain to; it must also name\n"
     "the host of --http (without it: plain HTTP)"},
    {"config", POPT_ACTION, NULL, "FILE",
     "read options from FILE first (see below); the command line\n"
     "overrides the file"},
    {"check-config", POPT_ACTION, NULL, NULL,
     "validate the configuration file, the command line, the\n"
     "ballot key and that the TLS files are readable, then exit\n"
     "(0 valid, 2 not); connects to nothing\n"
     "and leaves the spool alone"},
    {"help", POPT_ACTION, NULL, NULL, "this text (also -h)"},
    {"version", POPT_ACTION, NULL, NULL, "show the version and exit"},
};
#define N_POPTS (sizeof(popts) / sizeof(popts[0]))
/* getopt_long's value for popts[i] is POPT_VAL + i, clear of '?' and the short options. */
#define POPT_VAL 256

static void usage(FILE *out)
{
    fputs("usage: tally-push --server HOST:PORT[,HOST:PORT]... --collector ID --spool DIR\n"
          "                  [--tls-cert FILE --tls-key FILE --tls-ca FILE\n"
          "                  [--tls-server-name NAME]]\n"
          "                  [--ballot-key FILE] [--batch N] [--quiet] [FILE|-]\n"
          "       tally-push ... --sheets SHEETS.csv\n"
          "       tally-push --verify-receipts --spool DIR --head HASH --http HOST:PORT\n"
          "                  [--collector ID] [--http-tls-ca FILE] [--quiet]\n"
          "       tally-push --config FILE [--check-config] [OPTION]... [FILE|-]\n"
          "\n"
          "Reads CSV lines `voter,project_id[,table_id]` (header line optional) from FILE\n"
          "or stdin, turns each voter id into a ballot token and pushes the votes to\n"
          "tallyd; a third field names the vote's voting table (empty: none).\n"
          "Every batch is spooled to DIR and fsynced before it is sent; killed at any\n"
          "moment and started again with the same arguments, it resumes without sending\n"
          "any vote twice. Exits once every batch is durable, printing one line:\n"
          "  batches B votes V accepted A duplicate D rejected R not_allowed N\n"
          "(A, D, R: tallyd's durable totals for this collector; not_allowed: votes this\n"
          "run saw rejected for a project outside the collector's circuits, part of R).\n"
          "\n"
          "--sheets SHEETS.csv pushes tally sheets and reads no votes (no FILE or -).\n"
          "Header `table_id,version,project_id,votes`; project_id is a project id or\n"
          "`blank` or `null` (once each per sheet); votes 0..2147483647; version from 1.\n"
          "The rows of one (table_id, version) are one sheet wherever they stand; sheets\n"
          "go out 256 (or the server's row limit) to a batch. One bad line and no sheet\n"
          "is sent (each is reported with its line number; exit 3). tallyd judges each\n"
          "sheet: a rejected one is reported as `sheet T version V rejected: REASON`, a\n"
          "higher version as `sheet T version V replaces version P`. The summary line\n"
          "then goes on with `sheets N accepted A duplicate D rejected R` and, for each\n"
          "reason seen by this run, `REASON K`. Rejected sheets, like rejected votes, do\n"
          "not change the exit status: 0 once everything is durable. The same file again\n"
          "resumes where the spool stands; another file is sent whole (a sheet tallyd\n"
          "holds already is a duplicate, not counted twice).\n"
          "\n",
          out);
    for (size_t i = 0; i < N_POPTS; i++) {
        const struct popt *p = &popts[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", p->name, p->arg ? " " : "", p->arg ? p->arg : "");
        if (strlen(left) > 20)
            fprintf(out, "  %s\n%23s", left, ""); /* too wide: its help on the next line */
        else
            fprintf(out, "  %-20s ", left);
        for (const char *h = p->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n')
                fprintf(out, "%23s", "");
        }
        if (p->def)
            fprintf(out, " (default %s)", p->def);
        fputc('\n', out);
    }
    fputs("\n"
          "Several servers: one session at a time, with one of them. A server that refuses\n"
          "(a standby), stops (ERROR_SHUTTING_DOWN) or is lost gives way to the next in the\n"
          "list at once; only after every one failed in a row does tally-push wait (100 ms\n"
          "doubling to 5 s). Whatever is not durable yet is sent again to whichever answers,\n"
          "exactly as after any reconnect; a fatal refusal from any of them is final.\n"
          "\n"
          "Configuration file: `name = value` lines named like the long options above,\n"
          "`#` comments and blank lines; every option but config, check-config, help and\n"
          "version may be set there (quiet = yes|no). Values are checked like the command\n"
          "line's and errors name FILE:LINE; relative paths are taken from the working\n"
          "directory. The input FILE is given on the command line only.\n"
          "\n"
          "TLS: with --tls-cert, --tls-key and --tls-ca every session is TLS 1.3, this\n"
          "collector presenting its certificate and checking tallyd's against --tls-ca and\n"
          "the host of --server (or --tls-server-name). A handshake that fails (say, a\n"
          "certificate of another CA) is one more server away: the next is tried and the\n"
          "reason logged; if every attempt fails on the certificate, tally-push says so\n"
          "and keeps trying. Without them, plain TCP.\n"
          "\n"
          "--verify-receipts proves this collector's batches are in the total published\n"
          "as HASH, trusting nothing tallyd says: for every durable batch whose digest\n"
          "the spool kept, it fetches GET /v1/receipts/ID/SEQ from --http and checks\n"
          "the Merkle leaf of its own collector id, seq and digest against the receipt's\n"
          "path and checkpoint root, and every chain link recomputed from there up to\n"
          "HASH. It prints `receipts: N verified against head HASH` (exit 0), or\n"
          "`receipt for ID/SEQ: WHY` for the first batch that does not verify (a 404 or\n"
          "409 included: the spool holds the batch as durable; exit 1). tallyd\n"
          "unreachable or another HTTP error: exit 1. --collector defaults to the\n"
          "spool's. The spool is opened (and locked) only to read its digests; a\n"
          "--server and the collector's TLS files are not needed.\n"
          "\n"
          "Exit status: 0 all durable (rejected votes and sheets included); 1 fatal\n"
          "(refused by the server, spool damaged, I/O error, interrupted, or another\n"
          "source is using this collector id: tallyd holds other content for a seq this\n"
          "spool sent; the spool is kept); 2 usage or configuration error; 3 all durable\n"
          "but some lines were malformed (--sheets: a bad line, nothing sent); 4 tallyd\n"
          "refused this certificate for this collector id (ERROR_AUTH: it is not the one\n"
          "pinned to the id); 5 the collector is disabled on tallyd\n"
          "(ERROR_COLLECTOR_DISABLED); 6 the consultation is closed (ERROR_CLOSED:\n"
          "batches not yet counted will not be). The spool is kept in every case.\n",
          out);
}

static const struct popt *popt_find(const char *name)
{
    for (size_t i = 0; i < N_POPTS; i++)
        if (strcmp(popts[i].name, name) == 0)
            return &popts[i];
    return NULL;
}

/* --server A[,B...]: the whole list, replacing any earlier one (the command line's replaces
 * the file's). Blanks around an address are ignored; an empty one, a duplicate or more than
 * TALLY_CLIENT_SERVERS_MAX are errors. Returns 0, or -1 with the reason in err. */
static int servers_set(struct push_options *o, const char *val, char *err, size_t len)
{
    struct push_server list[TALLY_CLIENT_SERVERS_MAX];
    size_t n = 0;
    for (const char *p = val;;) {
        const char *end = strchr(p, ',');
        size_t elen = end ? (size_t)(end - p) : strlen(p);
        for (; elen && (*p == ' ' || *p == '\t'); elen--)
            p++;
        while (elen && (p[elen - 1] == ' ' || p[elen - 1] == '\t'))
            elen--;
        if (elen == 0 && (end || n > 0)) {
            snprintf(err, len, "--server: empty address in '%s'", val);
            return -1;
        }
        if (n == TALLY_CLIENT_SERVERS_MAX) {
            snprintf(err, len, "--server takes at most %u addresses", TALLY_CLIENT_SERVERS_MAX);
            return -1;
        }
        struct push_server *s = &list[n];
        snprintf(s->text, sizeof(s->text), "%.*s", (int)elen, p);
        if (elen >= sizeof(s->text) || addr_split(s->text, s->host, sizeof(s->host), &s->port)) {
            snprintf(err, len, "--server wants HOST:PORT, not '%.*s'", (int)elen, p);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(list[i].text, s->text) == 0) {
                snprintf(err, len, "--server lists %s twice", s->text);
                return -1;
            }
        n++;
        if (!end)
            break;
        p = end + 1;
    }
    memcpy(o->servers, list, n * sizeof(list[0]));
    o->n_servers = n;
    return 0;
}

/* Sets one option from its text, the same checks for the command line, the file and the
 * defaults. val is NULL for a flag on the command line. Returns 0, or -1 with the reason
 * in err. */
static int option_set(struct push_options *o, const struct popt *p, const char *val, char *err,
                      size_t len)
{
    uint64_t v;
    switch (p->kind) {
    case POPT_SERVER:
        return servers_set(o, val, err, len);
    case POPT_COLLECTOR:
        if (!tally_client_id_is_valid(val)) {
            snprintf(err, len, "collector id must be 1-63 characters of [A-Za-z0-9._-]");
            return -1;
        }
        snprintf(o->collector, sizeof(o->collector), "%s", val);
        return 0;
    case POPT_PATH: {
        char *dst = !strcmp(p->name, "spool")         ? o->spool
                    : !strcmp(p->name, "tls-cert")    ? o->tls_cert
                    : !strcmp(p->name, "tls-key")     ? o->tls_key
                    : !strcmp(p->name, "tls-ca")      ? o->tls_ca
                    : !strcmp(p->name, "http-tls-ca") ? o->http_tls_ca
                                                      : o->key_file;
        if (!*val || strlen(val) >= PATH_MAX) {
            snprintf(err, len, "--%s wants a path of 1 to %d bytes", p->name, PATH_MAX - 1);
            return -1;
        }
        memcpy(dst, val, strlen(val) + 1);
        return 0;
    }
    case POPT_NAME:
        if (!*val || strlen(val) >= sizeof(o->tls_server_name)) {
            snprintf(err, len, "--%s wants a name of 1 to %zu bytes", p->name,
                     sizeof(o->tls_server_name) - 1);
            return -1;
        }
        memcpy(o->tls_server_name, val, strlen(val) + 1);
        return 0;
    case POPT_BATCH:
        if (parse_u64(val, UINT32_MAX, &v) < 0 || v == 0) {
            snprintf(err, len, "--batch wants a positive number, not '%s'", val);
            return -1;
        }
        o->batch = (uint32_t)v;
        return 0;
    case POPT_FLAG: /* "--quiet" on the command line; "quiet = yes|no" in a file */
        if (!val || !*val || !strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "1"))
            o->quiet = true;
        else if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "0"))
            o->quiet = false;
        else {
            snprintf(err, len, "--%s wants yes or no, not '%s'", p->name, val);
            return -1;
        }
        return 0;
    case POPT_HTTP: {
        struct push_server *s = &o->http;
        if (strlen(val) >= sizeof(s->text) ||
            addr_split(val, s->host, sizeof(s->host), &s->port) < 0) {
            snprintf(err, len, "--http wants HOST:PORT, not '%s'", val);
            return -1;
        }
        snprintf(s->text, sizeof(s->text), "%s", val);
        return 0;
    }
    case POPT_HEAD:
        if (push_hex32_parse(val, strlen(val), o->head) < 0) {
            snprintf(err, len, "--head wants the chain head's 64 hex digits, not '%s'", val);
            return -1;
        }
        o->has_head = true;
        return 0;
    case POPT_ACTION:
        return 0;
    }
    return -1;
}

static int file_set(void *arg, const char *name, const char *value, char *err, size_t len)
{
    const struct popt *p = popt_find(name);
    if (!p) {
        snprintf(err, len, "unknown option '%s' (see tally-push --help)", name);
        return -1;
    }
    if (p->kind == POPT_ACTION) {
        snprintf(err, len, "'%s' is for the command line only", name);
        return -1;
    }
    return option_set(arg, p, value, err, len);
}

/* One getopt_long pass over argv. The first (settings false) takes the actions only:
 * --help and --version print and end it, --config and --check-config are noted, an
 * unknown option is an error. The second applies the settings over the file's. Returns 0,
 * PUSH_OPTIONS_DONE or PUSH_EXIT_USAGE (after saying why). */
static int cmdline(struct push_options *o, int argc, char **argv, bool settings)
{
    struct option longopts[N_POPTS + 1];
    for (size_t i = 0; i < N_POPTS; i++)
        longopts[i] = (struct option){popts[i].name, popts[i].arg ? required_argument : no_argument,
                                      NULL, POPT_VAL + (int)i};
    longopts[N_POPTS] = (struct option){0};
    opterr = 0;
    optind = 0; /* glibc: a full restart, the second pass rescans the (permuted) argv */
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'h' && settings)
            continue;
        if (ch == 'h') {
            usage(stdout);
            return PUSH_OPTIONS_DONE;
        }
        if (ch < POPT_VAL || (size_t)(ch - POPT_VAL) >= N_POPTS) {
            fprintf(stderr, "tally-push: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return PUSH_EXIT_USAGE;
        }
        const struct popt *p = &popts[ch - POPT_VAL];
        if (p->kind == POPT_ACTION) {
            if (settings)
                continue;
            if (strcmp(p->name, "help") == 0) {
                usage(stdout);
                return PUSH_OPTIONS_DONE;
            }
            if (strcmp(p->name, "version") == 0) {
                printf("tally-push %s (protocol %u)\n", TALLY_PUSH_VERSION, TALLY_PROTOCOL_VERSION);
                return PUSH_OPTIONS_DONE;
            }
            if (strcmp(p->name, "config") == 0)
                o->config = optarg;
            else if (strcmp(p->name, "sheets") == 0)
                o->sheets = optarg;
            else if (strcmp(p->name, "verify-receipts") == 0)
                o->verify_receipts = true;
            else
                o->check_config = true;
            continue;
        }
        char err[PATH_MAX + 128];
        if (settings && option_set(o, p, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "tally-push: %s\n", err);
            return PUSH_EXIT_USAGE;
        }
    }
    return 0;
}

/* --verify-receipts: --spool, --head and --http, nothing to push (--collector may come
 * from the spool: receipts_run.c looks). --server and the collector's TLS files may stand in
 * a configuration file shared with pushing runs: they are not used. */
static int receipts_options_check(struct push_options *o, int argc, char **argv)
{
    if (!o->spool[0] || !o->has_head || !o->http.port) {
        fprintf(stderr, "tally-push: --verify-receipts needs --spool, --head and --http\n");
        usage(stderr);
        return PUSH_EXIT_USAGE;
    }
    if (o->sheets || argc - optind > 0) {
        fprintf(stderr, "tally-push: --verify-receipts pushes nothing: no %s with it\n",
                o->sheets ? "--sheets" : argv[optind]);
        return PUSH_EXIT_USAGE;
    }
    o->input = "-";
    return 0;
}

/* Defaults, then the --config file, then the command line. Returns 0, PUSH_OPTIONS_DONE or
 * PUSH_EXIT_USAGE after saying why. */
int push_options_parse(int argc, char **argv, struct push_options *o)
{
    memset(o, 0, sizeof(*o));
    int rc = cmdline(o, argc, argv, false);
    if (rc)
        return rc;
    char err[PATH_MAX + 640];
    for (size_t i = 0; i < N_POPTS; i++)
        if (popts[i].def && option_set(o, &popts[i], popts[i].def, err, sizeof(err)) < 0)
            abort(); /* a default that does not parse is a bug any test catches */
    if (o->config && conffile_read(o->config, file_set, o, err, sizeof(err)) < 0) {
        fprintf(stderr, "tally-push: %s\n", err);
        return PUSH_EXIT_USAGE;
    }
    rc = cmdline(o, argc, argv, true);
    if (rc)
        return rc;
    if (o->verify_receipts)
        return receipts_options_check(o, argc, argv);
    if (!o->n_servers || !o->collector[0] || !o->spool[0]) {
        fprintf(stderr, "tally-push: --server, --collector and --spool are required\n");
        usage(stderr);
        return PUSH_EXIT_USAGE;
    }
    int tls = !!o->tls_cert[0] + !!o->tls_key[0] + !!o->tls_ca[0];
    if ((tls && tls < 3) || (!tls && o->tls_server_name[0])) {
        fprintf(stderr, "tally-push: --tls-cert, --tls-key and --tls-ca go together%s\n",
                tls ? "" : " (--tls-server-name needs them)");
        return PUSH_EXIT_USAGE;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "tally-push: one input at most\n");
        return PUSH_EXIT_USAGE;
    }
    if (o->sheets && argc - optind > 0) {
        fprintf(stderr, "tally-push: --sheets reads no votes: no vote input (%s) with it\n",
                argv[optind]);
        return PUSH_EXIT_USAGE;
    }
    o->input = optind < argc ? argv[optind] : "-";
    return 0;
}
