/* tally-push: reads `voter,project_id[,table_id]` CSV lines, turns each voter id into a ballot
 * token and pushes the votes to tallyd in spooled batches through libtally, resuming after a
 * crash from the input cursor stored with the newest spooled batch; or, with --sheets, tally
 * sheets (sheets_run.c). Owns the command line, the vote input and what is printed; the spool
 * and the session belong to libtally, lines and tokens to push.c, sheets to sheets.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/addr.h"
#include "core/conffile.h"
#include "core/csv.h"
#include "core/xalloc.h"
#include "push/push.h"
#include "push/sheets.h"
#include "push/sheets_run.h"
#include "tally/client.h"
#include "tally/protocol.h"

#define TALLY_PUSH_VERSION "0.1.0"
#define EXIT_FATAL PUSH_EXIT_FATAL
#define EXIT_USAGE PUSH_EXIT_USAGE
#define EXIT_MALFORMED PUSH_EXIT_MALFORMED
#define PROGRESS_MS 2000
/* A quiet input for this long sends the votes read so far (a pipe fed a few at a time). */
#define INPUT_QUIET_FLUSH_MS 500
/* Bytes a vote takes in a Batch frame at most (fixed64 + varint uint32 + its table index, a
 * varint below 4097), for clamping; and a full table dictionary (4096 ids of 63 bytes, each
 * with its tag and length). */
#define FRAME_BYTES_PER_VOTE 15u
#define FRAME_OVERHEAD 64u
#define FRAME_TABLES_MAX (PUSH_TABLES_PER_BATCH * (TALLY_COLLECTOR_ID_MAX + 2u))
/* options_parse: --help or --version was printed, exit 0. */
#define OPTIONS_DONE (-1)

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

/* One address of --server. */
struct push_server {
    char host[256];
    uint16_t port;
    char text[300]; /* as given, for messages */
};

/* Strings are copies: a configuration file's values live only while it is read. */
struct options {
    struct push_server servers[TALLY_CLIENT_SERVERS_MAX]; /* --server A,B,...: in this order */
    size_t n_servers;                                     /* 0: not given */
    char collector[TALLY_COLLECTOR_ID_MAX + 1];
    char spool[PATH_MAX];
    char key_file[PATH_MAX]; /* "" for the demo key */
    char tls_cert[PATH_MAX]; /* the three TLS files: all "" for plain TCP */
    char tls_key[PATH_MAX];
    char tls_ca[PATH_MAX];
    char tls_server_name[256]; /* "": the host of --server */
    uint32_t batch;
    bool quiet;
    const char *input;  /* "-" for stdin; the command line only */
    const char *sheets; /* --sheets FILE, NULL for votes; the command line only */
    const char *config; /* --config FILE, NULL for none */
    bool check_config;
};

/* One table feeds getopt_long, the configuration file and --help. An action is for the
 * command line only; every other option may also be set in the file. */
enum popt_kind {
    POPT_SERVER,
    POPT_COLLECTOR,
    POPT_PATH,
    POPT_NAME,
    POPT_BATCH,
    POPT_FLAG,
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

struct push {
    struct options opt;
    uint8_t key[PUSH_KEY_BYTES];
    struct tally_client *client;
    int in_fd;             /* the input (0, stdin, until it is opened) */
    struct csv_reader *in; /* its lines, once input_resume has positioned it */
    const char *in_name;   /* for messages */
    uint64_t offset;       /* input bytes consumed */
    uint64_t line;         /* lines consumed */
    uint64_t malformed;
    uint8_t prefix[PUSH_PREFIX_BYTES];
    size_t prefix_len;
    uint64_t *ballots;
    uint32_t *projects;
    uint32_t *vote_tables; /* parallel: 0 or the index in tables */
    bool named;            /* a vote of the batch being gathered names a table */
    struct push_tables tables;
    size_t n, cap;
    int64_t next_progress;
};

static void usage(FILE *out)
{
    fputs("usage: tally-push --server HOST:PORT[,HOST:PORT]... --collector ID --spool DIR\n"
          "                  [--tls-cert FILE --tls-key FILE --tls-ca FILE\n"
          "                  [--tls-server-name NAME]]\n"
          "                  [--ballot-key FILE] [--batch N] [--quiet] [FILE|-]\n"
          "       tally-push ... --sheets SHEETS.csv\n"
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
          "Exit status: 0 all durable (rejected votes and sheets included); 1 fatal\n"
          "(refused by the server, spool damaged, I/O error, interrupted, or another\n"
          "source is using this collector id: tallyd holds other content for a seq this\n"
          "spool sent; the spool is kept); 2 usage or configuration error; 3 all durable\n"
          "but some lines were malformed (--sheets: a bad line, nothing sent); 4 tallyd\n"
          "refused this certificate for this collector id (ERROR_AUTH: it is not the one\n"
          "pinned to the id); 5 the collector is disabled on tallyd\n"
          "(ERROR_COLLECTOR_DISABLED). The spool is kept in every case.\n",
          out);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
static int servers_set(struct options *o, const char *val, char *err, size_t len)
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
static int option_set(struct options *o, const struct popt *p, const char *val, char *err,
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
        char *dst = !strcmp(p->name, "spool")      ? o->spool
                    : !strcmp(p->name, "tls-cert") ? o->tls_cert
                    : !strcmp(p->name, "tls-key")  ? o->tls_key
                    : !strcmp(p->name, "tls-ca")   ? o->tls_ca
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
 * OPTIONS_DONE or EXIT_USAGE (after saying why). */
static int cmdline(struct options *o, int argc, char **argv, bool settings)
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
            return OPTIONS_DONE;
        }
        if (ch < POPT_VAL || (size_t)(ch - POPT_VAL) >= N_POPTS) {
            fprintf(stderr, "tally-push: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
        const struct popt *p = &popts[ch - POPT_VAL];
        if (p->kind == POPT_ACTION) {
            if (settings)
                continue;
            if (strcmp(p->name, "help") == 0) {
                usage(stdout);
                return OPTIONS_DONE;
            }
            if (strcmp(p->name, "version") == 0) {
                printf("tally-push %s (protocol %u)\n", TALLY_PUSH_VERSION, TALLY_PROTOCOL_VERSION);
                return OPTIONS_DONE;
            }
            if (strcmp(p->name, "config") == 0)
                o->config = optarg;
            else if (strcmp(p->name, "sheets") == 0)
                o->sheets = optarg;
            else
                o->check_config = true;
            continue;
        }
        char err[PATH_MAX + 128];
        if (settings && option_set(o, p, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "tally-push: %s\n", err);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* Defaults, then the --config file, then the command line. Returns 0, OPTIONS_DONE or
 * EXIT_USAGE after saying why. */
static int options_parse(int argc, char **argv, struct options *o)
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
        return EXIT_USAGE;
    }
    rc = cmdline(o, argc, argv, true);
    if (rc)
        return rc;
    if (!o->n_servers || !o->collector[0] || !o->spool[0]) {
        fprintf(stderr, "tally-push: --server, --collector and --spool are required\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    int tls = !!o->tls_cert[0] + !!o->tls_key[0] + !!o->tls_ca[0];
    if ((tls && tls < 3) || (!tls && o->tls_server_name[0])) {
        fprintf(stderr, "tally-push: --tls-cert, --tls-key and --tls-ca go together%s\n",
                tls ? "" : " (--tls-server-name needs them)");
        return EXIT_USAGE;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "tally-push: one input at most\n");
        return EXIT_USAGE;
    }
    if (o->sheets && argc - optind > 0) {
        fprintf(stderr, "tally-push: --sheets reads no votes: no vote input (%s) with it\n",
                argv[optind]);
        return EXIT_USAGE;
    }
    o->input = optind < argc ? argv[optind] : "-";
    return 0;
}

static void on_client_log(void *arg, enum tally_client_log_level level, const char *msg)
{
    const struct push *p = arg;
    /* An error is the reason of a fatal status, which client_check prints once, with what
     * it means for this run. */
    if (level == TALLY_CLIENT_LOG_DEBUG || level == TALLY_CLIENT_LOG_ERROR ||
        (level == TALLY_CLIENT_LOG_INFO && p->opt.quiet))
        return;
    fprintf(stderr, "tally-push: %s\n", msg);
}

static int key_load(struct push *p)
{
    if (!p->opt.key_file[0]) {
        memcpy(p->key, push_demo_key, PUSH_KEY_BYTES);
        fprintf(stderr, "tally-push: WARN: no --ballot-key: using the public demo key; anyone "
                        "can link its tokens to voter ids. Use a secret key in a real "
                        "consultation.\n");
        return 0;
    }
    int fd = open(p->opt.key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tally-push: %s: %s\n", p->opt.key_file, strerror(errno));
        return -1;
    }
    uint8_t buf[2 * PUSH_KEY_BYTES + 3];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(buf))
            break; /* already too long for either form */
    }
    close(fd);
    int rc = push_key_parse(buf, len, p->key);
    sodium_memzero(buf, sizeof(buf));
    if (rc < 0) {
        fprintf(stderr, "tally-push: %s: a ballot key is 32 raw bytes or 64 hex digits\n",
                p->opt.key_file);
        return -1;
    }
    return 0;
}

static void prefix_add(struct push *p, const void *data, size_t len)
{
    size_t room = PUSH_PREFIX_BYTES - p->prefix_len;
    if (len > room)
        len = room;
    memcpy(p->prefix + p->prefix_len, data, len);
    p->prefix_len += len;
}

/* Reads exactly len bytes of the input, going on after a signal that is not a stop. Returns
 * 0, or -1 with *err the errno of a failed read, 0 when the input ended first. */
static int input_read_full(struct push *p, void *buf, size_t len, int *err)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(p->in_fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR && !stop_signal)
            continue;
        if (n <= 0) {
            *err = n < 0 ? errno : 0;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Positions the input after the bytes the spool's newest batch already covers. */
static int input_resume(struct push *p, const struct push_cursor *cur)
{
    int read_errno = 0;
    size_t want = cur->prefix_len;
    if (input_read_full(p, p->prefix, want, &read_errno) < 0)
        goto short_input;
    p->prefix_len = want;
    uint8_t h[PUSH_PREFIX_HASH_BYTES];
    push_prefix_hash(p->prefix, want, h);
    if (memcmp(h, cur->prefix_hash, sizeof(h)) != 0) {
        fprintf(stderr,
                "tally-push: %s does not start like the input this spool was reading; "
                "refusing to skip its first %" PRIu64 " bytes (use a new --spool and "
                "--collector for a new input)\n",
                p->in_name, cur->offset);
        return -1;
    }
    uint64_t left = cur->offset - want;
    struct stat st;
    if (left > 0 && fstat(p->in_fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size < cur->offset)
            goto short_input;
        if (lseek(p->in_fd, (off_t)cur->offset, SEEK_SET) >= 0)
            left = 0;
    }
    static char sink[65536];
    while (left > 0) {
        size_t chunk = left < sizeof(sink) ? (size_t)left : sizeof(sink);
        if (input_read_full(p, sink, chunk, &read_errno) < 0)
            goto short_input;
        left -= chunk;
    }
    p->offset = cur->offset;
    p->line = cur->line;
    p->malformed = cur->malformed;
    if (!p->opt.quiet)
        fprintf(stderr, "tally-push: resuming %s after line %" PRIu64 " (byte %" PRIu64 ")\n",
                p->in_name, cur->line, cur->offset);
    return 0;
short_input:
    if (stop_signal)
        return -1;
    if (read_errno)
        fprintf(stderr, "tally-push: %s: %s\n", p->in_name, strerror(read_errno));
    else
        fprintf(stderr,
                "tally-push: %s is shorter than the %" PRIu64 " bytes this spool already "
                "consumed: not the same input\n",
                p->in_name, cur->offset);
    return -1;
}

static void progress(struct push *p, bool force)
{
    int64_t now = now_ms();
    if (p->opt.quiet || (!force && now < p->next_progress))
        return;
    p->next_progress = now + PROGRESS_MS;
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    const char *server = p->opt.servers[st.server_index].text;
    fprintf(stderr,
            "tally-push: line %" PRIu64 ", %" PRIu64 " batches spooled (%" PRIu64
            " votes), durable up to %" PRIu64 ", %s%s%s%s\n",
            p->line, st.batches_spooled, st.votes_spooled, st.durable_seq,
            st.connected ? "connected to " : "not connected", st.connected ? server : "",
            !st.connected && st.last_error[0] ? ": " : "", !st.connected ? st.last_error : "");
}

static void interrupted(struct push *p)
{
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    fprintf(stderr,
            "tally-push: stopped by signal %d: %" PRIu64 " batches are spooled in %s (%" PRIu64
            " not yet durable); run the same command again to resume\n",
            (int)stop_signal, st.batches_spooled, p->opt.spool, st.batches_pending);
}

/* Returns 0, or EXIT_FATAL once the reason has been printed. */
static int client_check(struct push *p, int rc)
{
    if (rc == 0 || rc == TALLY_CLIENT_ERR_INTR || rc == TALLY_CLIENT_ERR_TIMEOUT)
        return stop_signal ? EXIT_FATAL : 0;
    if (rc == TALLY_CLIENT_ERR_INVALID) {
        fprintf(stderr, "tally-push: internal error: libtally refused a batch\n");
        return EXIT_FATAL;
    }
    /* A fatal status is sticky and its reason is last_error (libtally logged it at ERROR). A
     * seq conflict is no fault of this run but another process on the same collector id: it
     * gets its own word, the line names the id, the seq and the spool dir. */
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    int code = push_exit_for_status(rc);
    fprintf(stderr, "tally-push: %s: %s\n",
            rc == TALLY_CLIENT_ERR_SEQ_CONFLICT || code != EXIT_FATAL ? "fatal" : "error",
            st.last_error[0] ? st.last_error : tally_client_strerror(rc));
    return code;
}

/* Spools the votes gathered so far with the cursor just past the last line read. */
static int batch_flush(struct push *p)
{
    if (p->n == 0)
        return 0;
    struct push_cursor cur = {
        .offset = p->offset,
        .line = p->line,
        .malformed = p->malformed,
        .prefix_len = (uint32_t)(p->offset < PUSH_PREFIX_BYTES ? p->offset : PUSH_PREFIX_BYTES),
    };
    push_prefix_hash(p->prefix, cur.prefix_len, cur.prefix_hash);
    uint8_t blob[PUSH_CURSOR_BYTES];
    push_cursor_encode(&cur, blob);
    for (;;) {
        int rc = tally_client_spool_tables(p->client, p->ballots, p->projects,
                                           p->named ? p->vote_tables : NULL, p->n,
                                           (const char *const *)p->tables.ids,
                                           p->named ? p->tables.n : 0, blob, sizeof(blob), NULL);
        if (rc == 0)
            break;
        if (rc != TALLY_CLIENT_ERR_FULL)
            return client_check(p, rc);
        /* Spool full: let the server catch up before reading more. */
        int e = client_check(p, tally_client_pump(p->client, 200));
        if (e)
            return e;
        progress(p, false);
    }
    p->n = 0;
    p->named = false;
    push_tables_reset(&p->tables);
    int e = client_check(p, tally_client_pump(p->client, 0));
    progress(p, false);
    return e;
}

/* Waits for the first Welcome: the batch size must respect the server's limits. */
static int server_wait(struct push *p)
{
    struct tally_client_stats st;
    for (;;) {
        tally_client_stats(p->client, &st);
        if (st.server_known)
            break;
        int e = client_check(p, tally_client_pump(p->client, 250));
        if (e)
            return e;
        progress(p, false);
    }
    size_t cap = p->opt.batch;
    if (st.max_batch_votes && cap > st.max_batch_votes)
        cap = st.max_batch_votes;
    if (st.max_frame_bytes > FRAME_OVERHEAD * 2) {
        /* Room for a full dictionary besides the votes; with a small frame limit, room for
         * one new table id per vote instead (a batch never names more tables than votes). */
        size_t room = st.max_frame_bytes - FRAME_OVERHEAD;
        size_t fit = room > 2 * FRAME_TABLES_MAX
                         ? (room - FRAME_TABLES_MAX) / FRAME_BYTES_PER_VOTE
                         : room / (FRAME_BYTES_PER_VOTE + TALLY_COLLECTOR_ID_MAX + 2u);
        if (cap > fit)
            cap = fit;
    }
    if (cap < p->opt.batch && !p->opt.quiet)
        fprintf(stderr, "tally-push: batches of %zu votes (the server's limit)\n", cap);
    p->cap = cap;
    p->ballots = xcalloc(cap, sizeof(*p->ballots));
    p->projects = xcalloc(cap, sizeof(*p->projects));
    p->vote_tables = xcalloc(cap, sizeof(*p->vote_tables));
    return 0;
}

/* Waits until the input has something (or ends, or fails: read(2) then says which), pumping
 * the session meanwhile: with a quiet pipe, acks, resends after a reconnect and keep-alive
 * Pings go on, and votes already read go out as a smaller batch once the input has been
 * quiet for INPUT_QUIET_FLUSH_MS rather than waiting for a full one. A regular file is
 * always ready. */
static int input_wait(struct push *p)
{
    int64_t quiet_since = now_ms();
    for (;;) {
        struct pollfd pfd = {.fd = p->in_fd, .events = POLLIN};
        int r = poll(&pfd, 1, 0);
        if (r != 0 || stop_signal)
            return 0; /* ready, hung up, or an error (EINTR included) read(2) will report */
        if (p->n && now_ms() - quiet_since >= INPUT_QUIET_FLUSH_MS) {
            int e = batch_flush(p);
            if (e)
                return e;
        }
        int e = client_check(p, tally_client_pump(p->client, 100));
        if (e)
            return e;
        progress(p, false);
    }
}

static int input_read(struct push *p)
{
    int rc = 0;
    for (;;) {
        if (stop_signal) {
            rc = EXIT_FATAL;
            break;
        }
        if (!csv_reader_has_line(p->in) && (rc = input_wait(p)) != 0)
            break;
        if (stop_signal)
            continue;
        char *line;
        size_t n;
        int got = csv_reader_line(p->in, &line, &n);
        int e = got < 0 ? csv_reader_error(p->in)->sys : 0;
        if (e == EINTR)
            continue; /* a partial line waits in the reader, uncounted; a stop is seen above */
        if (got < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->in_name, strerror(e));
            rc = EXIT_FATAL;
            break;
        }
        if (got == 0)
            break;
        prefix_add(p, line, n);
        p->offset += (uint64_t)n;
        p->line++;
        struct push_line pl;
        switch (push_line_parse(line, n, p->line == 1, &pl)) {
        case PUSH_LINE_VOTE: {
            uint32_t t = 0;
            if (pl.table_len) {
                /* A full dictionary sends what came before: the cursor is the previous
                 * line's end, so this line is read again after a crash. */
                if ((t = push_tables_index(&p->tables, pl.table, pl.table_len)) == 0) {
                    p->offset -= (uint64_t)n;
                    p->line--;
                    rc = batch_flush(p);
                    p->offset += (uint64_t)n;
                    p->line++;
                    if (rc)
                        break;
                    t = push_tables_index(&p->tables, pl.table, pl.table_len);
                }
                p->named = true;
            }
            p->ballots[p->n] = push_token(p->key, pl.voter, pl.voter_len);
            p->projects[p->n] = pl.project;
            p->vote_tables[p->n] = t;
            p->n++;
            break;
        }
        case PUSH_LINE_MALFORMED:
            p->malformed++;
            fprintf(stderr, "tally-push: %s:%" PRIu64 ": %s\n", p->in_name, p->line, pl.reason);
            break;
        case PUSH_LINE_HEADER:
        case PUSH_LINE_BLANK:
            break;
        }
        if (rc || (p->n == p->cap && (rc = batch_flush(p)) != 0))
            break;
        if ((p->line & 4095) == 0)
            progress(p, false);
    }
    if (rc == 0)
        rc = batch_flush(p);
    return rc;
}

static int durable_wait(struct push *p)
{
    for (;;) {
        int rc = tally_client_wait_durable(p->client, PROGRESS_MS);
        if (rc == 0)
            return 0;
        int e = client_check(p, rc);
        if (e)
            return e;
        progress(p, false);
    }
}

static int check_cb(void *arg, int rc)
{
    struct push *p = arg;
    int e = client_check(p, rc);
    progress(p, false);
    return e;
}

/* The summary line, with its sheets part when sheets are involved. */
static int summary_print(struct push *p)
{
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    char line[512];
    push_summary_format(line, sizeof(line), st.batches_spooled, st.votes_spooled,
                        st.server.accepted, st.server.duplicate, st.server.rejected,
                        st.rejected_not_allowed);
    uint64_t seen = st.sheets_accepted + st.sheets_duplicate + st.sheets_rejected;
    if (p->opt.sheets || st.server.sheets || seen) {
        /* tallyd's durable totals; a tallyd that does not report them yet: this run's acks. */
        if (st.server.sheets)
            push_summary_sheets_append(line, sizeof(line), st.server.sheets,
                                       st.server.sheets_accepted, st.server.sheets_duplicate,
                                       st.server.sheets_rejected, st.sheets_rejected_by_reason);
        else
            push_summary_sheets_append(line, sizeof(line), seen, st.sheets_accepted,
                                       st.sheets_duplicate, st.sheets_rejected,
                                       st.sheets_rejected_by_reason);
    }
    printf("%s\n", line);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tally-push: stdout: %s\n", strerror(errno));
        return EXIT_FATAL;
    }
    return 0;
}

static int push_run(struct push *p)
{
    if (!p->opt.sheets && key_load(p) < 0)
        return EXIT_FATAL;
    if (p->opt.sheets) {
        p->in_fd = open(p->opt.sheets, O_RDONLY | O_CLOEXEC);
        p->in_name = p->opt.sheets;
        if (p->in_fd < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->opt.sheets, strerror(errno));
            return EXIT_FATAL;
        }
    } else if (strcmp(p->opt.input, "-") == 0) {
        p->in_fd = STDIN_FILENO;
        p->in_name = "-";
    } else {
        p->in_fd = open(p->opt.input, O_RDONLY | O_CLOEXEC);
        p->in_name = p->opt.input;
        if (p->in_fd < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->opt.input, strerror(errno));
            return EXIT_FATAL;
        }
    }
    struct tally_client_server servers[TALLY_CLIENT_SERVERS_MAX];
    for (size_t i = 0; i < p->opt.n_servers; i++)
        servers[i] = (struct tally_client_server){p->opt.servers[i].host, p->opt.servers[i].port};
    struct tally_client_config cfg = {
        .servers = servers,
        .n_servers = p->opt.n_servers,
        .collector_id = p->opt.collector,
        .spool_dir = p->opt.spool,
        .log_cb = on_client_log,
        .log_arg = p,
        .tls_cert = p->opt.tls_cert[0] ? p->opt.tls_cert : NULL,
        .tls_key = p->opt.tls_key[0] ? p->opt.tls_key : NULL,
        .tls_ca = p->opt.tls_ca[0] ? p->opt.tls_ca : NULL,
        .tls_server_name = p->opt.tls_server_name[0] ? p->opt.tls_server_name : NULL,
    };
    char err[512];
    p->client = tally_client_new(&cfg, err, sizeof(err));
    if (!p->client) {
        fprintf(stderr, "tally-push: %s\n", err);
        return EXIT_FATAL;
    }

    p->next_progress = now_ms() + PROGRESS_MS;
    if (p->opt.sheets) {
        struct push_sheets_run r = {
            .client = p->client,
            .fd = p->in_fd,
            .name = p->in_name,
            .spool = p->opt.spool,
            .quiet = p->opt.quiet,
            .stop = &stop_signal,
            .check = check_cb,
            .arg = p,
        };
        int rc = push_sheets_run(&r);
        if (rc == 0)
            rc = durable_wait(p);
        if (rc) {
            if (stop_signal)
                interrupted(p);
            return rc;
        }
        return summary_print(p);
    }

    uint8_t blob[TALLY_CLIENT_CURSOR_MAX];
    size_t blob_len;
    struct push_cursor cur = {0};
    uint64_t sheets_done;
    uint8_t sheets_hash[PUSH_FILE_HASH_BYTES];
    if (tally_client_last_cursor(p->client, blob, sizeof(blob), &blob_len) == 0 && blob_len &&
        push_sheet_cursor_decode(blob, blob_len, &sheets_done, sheets_hash) == 0) {
        fprintf(stderr,
                "tally-push: spool %s was last used for --sheets: its cursor says nothing of "
                "a vote input (use another --spool and --collector for votes)\n",
                p->opt.spool);
        return EXIT_FATAL;
    }
    if (tally_client_last_cursor(p->client, blob, sizeof(blob), &blob_len) < 0 ||
        (blob_len && push_cursor_decode(blob, blob_len, &cur) < 0)) {
        fprintf(stderr, "tally-push: spool %s holds a cursor tally-push did not write\n",
                p->opt.spool);
        return EXIT_FATAL;
    }

    if (blob_len && input_resume(p, &cur) < 0)
        return EXIT_FATAL;
    /* By read(2): a line that has come down a pipe is taken without waiting for more. */
    p->in = csv_reader_new_fd(p->in_fd, &(const struct csv_options){0});

    int rc = server_wait(p);
    if (rc == 0)
        rc = input_read(p);
    if (rc == 0)
        rc = durable_wait(p);
    if (rc) {
        if (stop_signal)
            interrupted(p);
        return rc;
    }

    if ((rc = summary_print(p)) != 0)
        return rc;
    if (p->malformed) {
        fprintf(stderr,
                "tally-push: %" PRIu64 " malformed line%s skipped in %s (each reported with "
                "its line number by the run that read it)\n",
                p->malformed, p->malformed == 1 ? " was" : "s were", p->in_name);
        return EXIT_MALFORMED;
    }
    return 0;
}

/* --check-config: the options are valid by now; the ballot key is the one setting only
 * its file can prove. Reads nothing else: no input, no spool, no connection. */
static int config_check(struct push *p)
{
    int rc = key_load(p) < 0 ? EXIT_USAGE : 0;
    const char *tls[][2] = {{"--tls-cert", p->opt.tls_cert},
                            {"--tls-key", p->opt.tls_key},
                            {"--tls-ca", p->opt.tls_ca}};
    for (size_t i = 0; i < 3; i++)
        if (tls[i][1][0] && access(tls[i][1], R_OK) < 0) {
            fprintf(stderr, "tally-push: %s %s: %s\n", tls[i][0], tls[i][1], strerror(errno));
            rc = EXIT_USAGE;
        }
    sodium_memzero(p->key, sizeof(p->key));
    if (rc == 0)
        printf("tally-push: configuration OK (%s)\n",
               p->opt.config ? p->opt.config : "command line only");
    return rc;
}

int main(int argc, char **argv)
{
    struct push p;
    memset(&p, 0, sizeof(p));
    push_tables_init(&p.tables);
    int rc = options_parse(argc, argv, &p.opt);
    if (rc)
        return rc == OPTIONS_DONE ? 0 : rc;
    if (sodium_init() < 0) {
        fprintf(stderr, "tally-push: libsodium failed to initialise\n");
        return EXIT_FATAL;
    }
    if (p.opt.check_config)
        return config_check(&p);
    /* No SA_RESTART: a read blocked on stdin must return so the signal is seen. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = push_run(&p);

    csv_reader_free(p.in);
    if (p.in_fd > STDIN_FILENO)
        close(p.in_fd);
    tally_client_free(p.client);
    sodium_memzero(p.key, sizeof(p.key));
    free(p.ballots);
    free(p.projects);
    free(p.vote_tables);
    push_tables_cleanup(&p.tables);
    return rc;
}
